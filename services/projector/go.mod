module github.com/pbxpulse/pbxpulse/services/projector

go 1.26.8
