package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

// TestResignTimestamp: the timestamp lives 2 s; serve re-signs it every
// 300 ms with the timestamp key alone while a device refreshes for 7 s
// (three expiries and more) and a publisher adds a release half-way. The
// device never sees an expired timestamp and gets the new release. serve
// warns about a snapshot that expires within ExpiryWarn. The control:
// the same repository without re-signing is refused after 2.5 s.
func TestResignTimestamp(t *testing.T) {
	pass := []byte("pw")
	dir := filepath.Join(t.TempDir(), "repo")
	pub, err := repo.Create(dir, repo.Options{ConsistentSnapshot: true, Passphrase: pass,
		Expiry: map[string]time.Duration{"timestamp": 2 * time.Second, "snapshot": time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTarget("releases/1/manifest.cbor", bytes.NewReader([]byte("one")), nil); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(); err != nil {
		t.Fatal(err)
	}
	ts, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: pass, Roles: []string{"timestamp"}})
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := ts.Keys(); len(list[0].Held)+len(list[1].Held)+len(list[2].Held) != 0 || len(list[3].Held) != 1 {
		t.Fatalf("serve's repository holds %+v: want the timestamp key only", list)
	}
	s, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: ts.MetadataDir(), TargetsDir: ts.TargetsDir(),
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Timestamp: ts, ResignEvery: 300 * time.Millisecond, ExpiryWarn: 2 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	root, _ := pub.Root()
	md := filepath.Join(t.TempDir(), "tuf")
	if err := tuf.Init(md, root); err != nil {
		t.Fatal(err)
	}
	c, err := tuf.New(tuf.Config{MetadataDir: md, MetadataURL: s.HTTPURL() + "/metadata", TargetsURL: s.HTTPURL() + "/targets", TargetDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	published := false
	refreshes := 0
	for time.Since(start) < 7*time.Second {
		if err := c.Refresh(ctx); err != nil {
			t.Fatalf("refresh %d at %v: %v", refreshes, time.Since(start).Round(time.Millisecond), err)
		}
		refreshes++
		if !published && time.Since(start) > 3*time.Second {
			if _, err := pub.AddTarget("releases/2/manifest.cbor", bytes.NewReader([]byte("two")), nil); err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(); err != nil {
				t.Fatal(err)
			}
			published = true
		}
		time.Sleep(400 * time.Millisecond)
	}
	if b, err := c.ReadTarget(ctx, "releases/2/manifest.cbor", 10); err != nil || string(b) != "two" {
		t.Fatalf("release published half-way: %q %v", b, err)
	}
	st := s.Status()
	if st.Resigned.IsZero() || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "snapshot") {
		t.Fatalf("Status() = %+v: want a re-signing and one snapshot warning", st)
	}
	resp, err := http.Get(s.HTTPURL() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var got serve.Status
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if len(got.Warnings) != 1 {
		t.Fatalf("GET /status = %+v", got)
	}
	t.Logf("%d refreshes over %v; status %+v", refreshes, time.Since(start).Round(time.Millisecond), got)

	// control: nobody re-signs
	s.Close()
	time.Sleep(2500 * time.Millisecond)
	c2, err := tuf.New(tuf.Config{MetadataDir: md, MetadataURL: ts.MetadataDir(), TargetDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Refresh(ctx); !errors.Is(err, tuf.ErrExpired) {
		t.Fatalf("without re-signing: %v, want ErrExpired", err)
	}
}
