module github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck

go 1.26.8
