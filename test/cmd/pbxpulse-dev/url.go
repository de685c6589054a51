package main

import "net/url"

func urlParse(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	return u.Redacted(), nil
}
