module github.com/pbxpulse/pbxpulse/services/collector

go 1.26.8
