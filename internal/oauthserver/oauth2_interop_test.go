package oauthserver_test

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/oauth2"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
)

// The server speaks the protocol a mainstream client library speaks.
func TestInteropWithXOAuth2(t *testing.T) {
	for _, tc := range []struct {
		auth  string
		style oauth2.AuthStyle
	}{
		{providertest.AuthBasic, oauth2.AuthStyleInHeader},
		{providertest.AuthBody, oauth2.AuthStyleInParams},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			cfg := baseConfig(tc.auth, providertest.RequestForm)
			cfg.RotateRefreshTokens = true
			s := providertest.New(t, cfg)
			oc := &oauth2.Config{
				ClientID:     cfg.ClientID,
				ClientSecret: cfg.ClientSecret,
				RedirectURL:  cfg.RedirectURI,
				Scopes:       []string{"read", "write"},
				Endpoint:     oauth2.Endpoint{AuthURL: s.AuthorizeURL(), TokenURL: s.TokenURL(), AuthStyle: tc.style},
			}
			verifier := oauth2.GenerateVerifier()
			loc := s.Authorize(t, oc.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier)))
			if loc.Query().Get("state") != "st-1" {
				t.Fatalf("redirect %s", loc)
			}
			ctx := context.Background()
			tok, err := oc.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if !s.Valid(tok.AccessToken) || tok.RefreshToken == "" || tok.Extra("user_id") != "U123" || tok.Expiry.IsZero() {
				t.Fatalf("token %+v", tok)
			}
			// A second exchange gets invalid_grant, parsed by the library.
			_, err = oc.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Fatalf("second exchange: %v", err)
			}
			if s.Valid(tok.AccessToken) {
				t.Fatal("token of a reused code still valid")
			}
		})
	}
}
