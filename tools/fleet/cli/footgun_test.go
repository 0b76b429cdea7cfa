package cli_test

import (
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/transport"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/cli"
	"github.com/graft-dev/graft/tuf/repo"
)

// TestRepoAddTargetKeepsPublishedBytes: a published target cannot get
// other bytes under its name; the same bytes again are accepted.
func TestRepoAddTargetKeepsPublishedBytes(t *testing.T) {
	t.Parallel()
	dir := newRepo(t)
	first := filepath.Join(t.TempDir(), "a")
	second := filepath.Join(t.TempDir(), "b")
	os.WriteFile(first, []byte("published bytes"), 0o644)
	os.WriteFile(second, []byte("other bytes"), 0o644)
	mustRun(t, "repo", "add-target", "--dir", dir, "docs/x.txt", first)
	mustRun(t, "repo", "publish", "--dir", dir)

	code, _, stderr := run(t.Context(), "repo", "add-target", "--dir", dir, "docs/x.txt", second)
	if code != cli.ExitFailure || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("replacing a published target: exit %d, stderr %q", code, stderr)
	}
	mustRun(t, "repo", "publish", "--dir", dir)
	r, err := repo.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range r.Targets() {
		if tg.Name == "docs/x.txt" && tg.Length != int64(len("published bytes")) {
			t.Fatalf("the published target changed: %+v", tg)
		}
	}
	mustRun(t, "repo", "add-target", "--dir", dir, "docs/x.txt", first) // same bytes: fine
}

// TestNotifyUnpublishedRelease: notify refuses a release that is not
// published (or whose manifest names another release), and publishes
// nothing. The repository comes from the environment.
func TestNotifyUnpublishedRelease(t *testing.T) {
	dir := newRepo(t)
	addRelease(t, dir, "v2", "2")
	t.Setenv(cli.EnvRepo, dir)
	s, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: t.TempDir(), TargetsDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i, args := range [][]string{
		{"v3"}, // not published
		{"v3", "--manifest", "releases/v2/manifest.cbor"}, // the manifest is v2's
		{"v2", "--manifest", "releases/v2/rootfs.img"},    // not a manifest
	} {
		code, _, stderr := run(t.Context(), append([]string{"notify", "--broker", s.MQTTURL(), "--device", "d" + strconv.Itoa(i)}, args...)...)
		if code == cli.ExitOK || strings.Count(stderr, "\n") != 1 {
			t.Errorf("notify %v: exit %d, stderr %q", args, code, stderr)
		}
	}
	c := client(t, s.MQTTURL(), "watcher")
	in, _ := subscribe(t, c, transport.DeviceFilter(transport.KindNotify))
	mustRun(t, "notify", "--broker", s.MQTTURL(), "--device", "ok", "v2")
	if got := <-in; !strings.HasPrefix(got, transport.NotifyTopic("ok")+"=") {
		t.Fatalf("a refused notice was published: %q", got)
	}
}
