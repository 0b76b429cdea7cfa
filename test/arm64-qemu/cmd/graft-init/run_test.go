package main

import (
	"errors"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
)

func TestParseRunArg(t *testing.T) {
	tests := []struct {
		cmdline string
		want    bool
	}{
		{"console=ttyAMA0 panic=1\n", false},
		{"console=ttyAMA0 graft.run=1 quiet\n", true},
		{"graft.run=0", false},
		{"graft.run=1 graft.run=0", false},
		{"graft.run=0 graft.run=1", true},
		{"xgraft.run=1", false},
		{"graft.run=yes", false},
	}
	for _, tt := range tests {
		t.Run(tt.cmdline, func(t *testing.T) {
			if got := parseRunArg(tt.cmdline); got != tt.want {
				t.Errorf("parseRunArg(%q) = %v, want %v", tt.cmdline, got, tt.want)
			}
		})
	}
}

func TestParseRunConfig(t *testing.T) {
	// testdata/run-config.json is what the rig's RunGuest writes (its
	// tests check that too): both sides agree on the format.
	golden, err := os.ReadFile("testdata/run-config.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		want    runConfig
		wantErr error
	}{
		{"rig's encoding", string(golden), runConfig{
			Argv: []string{"/bin/prog", "-v", "two words", "ü"},
			Env:  []string{"GRAFT_X=1", "EMPTY="},
		}, nil},
		{"no env", `{"argv":["/t"]}`, runConfig{Argv: []string{"/t"}}, nil},
		{"empty argv", `{"argv":[]}`, runConfig{}, errRunConfig},
		{"relative program", `{"argv":["prog"]}`, runConfig{}, errRunConfig},
		{"NUL in argument", `{"argv":["/t","a\u0000b"]}`, runConfig{}, errRunConfig},
		{"env without =", `{"argv":["/t"],"env":["FOO"]}`, runConfig{}, errRunConfig},
		{"env without key", `{"argv":["/t"],"env":["=x"]}`, runConfig{}, errRunConfig},
		{"unknown field", `{"argv":["/t"],"dir":"/tmp"}`, runConfig{}, errRunConfig},
		{"trailing data", `{"argv":["/t"]} {}`, runConfig{}, errRunConfig},
		{"not JSON", "/bin/prog\n", runConfig{}, errRunConfig},
		{"empty", "", runConfig{}, errRunConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRunConfig([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(got.Argv, tt.want.Argv) || !slices.Equal(got.Env, tt.want.Env) {
				t.Errorf("parseRunConfig = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParseRunConfig(f *testing.F) {
	f.Add([]byte(`{"argv":["/bin/prog","x"],"env":["A=b"]}`))
	f.Add([]byte(`{"argv":["/t"],"env":["=x"]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseRunConfig(data)
		if err != nil {
			return
		}
		if len(c.Argv) == 0 || !path.IsAbs(c.Argv[0]) {
			t.Fatalf("accepted argv %q", c.Argv)
		}
		for _, e := range c.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				t.Fatalf("accepted env %q", e)
			}
		}
	})
}
