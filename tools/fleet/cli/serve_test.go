package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/cli"
)

// TestServeCommand: serve prints its bound addresses as JSON, serves the
// repository's metadata, and exits 0 when interrupted.
func TestServeCommand(t *testing.T) {
	t.Parallel()
	dir := newRepo(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"serve", "--repo", dir, "--db", filepath.Join(t.TempDir(), "fleet.db"), "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--json"}, &out, &errb)
	}()
	waitFor(t, &out, "addresses printed", func(s string) bool { return strings.HasSuffix(s, "\n") })
	var addrs struct{ MQTT, HTTP, Metadata string }
	if err := json.Unmarshal([]byte(out.String()), &addrs); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	if !strings.HasPrefix(addrs.MQTT, "tcp://127.0.0.1:") || strings.HasSuffix(addrs.MQTT, ":0") {
		t.Fatalf("mqtt address %q", addrs.MQTT)
	}
	client(t, addrs.MQTT, "probe") // the broker accepts clients

	resp, err := http.Get(addrs.Metadata + "timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"_type":"timestamp"`) {
		t.Fatalf("GET timestamp.json: %d %q", resp.StatusCode, body)
	}

	cancel()
	if code := <-done; code != cli.ExitOK {
		t.Fatalf("serve exit %d: %s", code, errb.String())
	}
}
