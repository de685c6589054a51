module github.com/pbxpulse/pbxpulse/services/mediabridge

go 1.26.8
