module github.com/pbxpulse/pbxpulse/services/logtailer

go 1.26.8
