module github.com/pbxpulse/pbxpulse/test

go 1.26.8
