module github.com/pbxpulse/pbxpulse/services/gateway

go 1.26.8
