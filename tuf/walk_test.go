package tuf_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

// handRole writes role's metadata (version, targets, delegations) signed
// by signer, as another repository tool could: graft's repository only
// delegates from the top-level targets.
func handRole(t *testing.T, f *fixture, role string, version int64, signer signature.Signer,
	targets map[string][]byte, d *metadata.Delegations) {
	t.Helper()
	m := metadata.Targets(time.Now().Add(24 * time.Hour))
	m.Signed.Version = version
	for name, data := range targets {
		tf, err := metadata.TargetFile().FromBytes(name, data, "sha256")
		if err != nil {
			t.Fatal(err)
		}
		m.Signed.Targets[name] = tf
		copyTarget(t, f, name, data)
	}
	m.Signed.Delegations = d
	if _, err := m.Sign(signer); err != nil {
		t.Fatal(err)
	}
	writeVersioned(t, f.r.MetadataDir(), role, version, m)
}

// handSnapshot lists the hand-written roles in a new snapshot and
// timestamp, signed with the repository's keys.
func handSnapshot(t *testing.T, f *fixture, versions map[string]int64) {
	t.Helper()
	repoDir := filepath.Join(f.dir, "repo")
	md := f.r.MetadataDir()
	snap, err := metadata.Snapshot().FromFile(filepath.Join(md, "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	for role, v := range versions {
		snap.Signed.Meta[role+".json"] = metadata.MetaFile(v)
	}
	snap.Signed.Version++
	snap.ClearSignatures()
	if _, err := snap.Sign(signingKey(t, repoDir, "snapshot", 1)); err != nil {
		t.Fatal(err)
	}
	writeVersioned(t, md, "snapshot", snap.Signed.Version, snap)
	resignTimestamp(t, filepath.Join(md, "timestamp.json"), func(s *metadata.TimestampType) {
		s.Version++
		s.Meta["snapshot.json"] = metadata.MetaFile(snap.Signed.Version)
	}, signingKey(t, repoDir, "timestamp", 1))
	f.sync()
}

func keyOf(t *testing.T, s signature.Signer) (string, *metadata.Key) {
	t.Helper()
	pub, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	id, err := k.ID()
	if err != nil {
		t.Fatal(err)
	}
	return id, k
}

// TestDelegationWalk: go-tuf's walk through nested delegations written by
// hand. Hashed bins (TAP 15 succinct roles, 4 bins): each target is found
// in its bin and nowhere else. A cycle (loop delegates to itself, then to
// leaf): the walk visits loop once and finds leaf's target; without the
// visited set it would never end.
func TestDelegationWalk(t *testing.T) {
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.delegate(repo.Delegation{Name: "binner", Paths: []string{"bins/*"}})
	f.delegate(repo.Delegation{Name: "loop", Paths: []string{"loop/*"}})
	repoDir := filepath.Join(f.dir, "repo")
	bk, lk := signingKey(t, repoDir, "binner", 1), signingKey(t, repoDir, "loop", 1)
	bid, bkey := keyOf(t, bk)
	lid, lkey := keyOf(t, lk)

	succinct := &metadata.SuccinctRoles{KeyIDs: []string{bid}, Threshold: 1, BitLength: 2, NamePrefix: "bin"}
	handRole(t, f, "binner", 2, bk, nil, &metadata.Delegations{Keys: map[string]*metadata.Key{bid: bkey}, SuccinctRoles: succinct})
	versions := map[string]int64{"binner": 2}
	names := []string{"bins/a", "bins/b", "bins/c", "bins/d", "bins/e"}
	byBin := map[string]map[string][]byte{}
	for _, n := range names {
		bin := succinct.GetRolesForTarget(n)[0].Name
		if byBin[bin] == nil {
			byBin[bin] = map[string][]byte{}
		}
		byBin[bin][n] = []byte(n)
	}
	for _, bin := range succinct.GetRoles() {
		handRole(t, f, bin, 1, bk, byBin[bin], nil)
		versions[bin] = 1
	}
	loopDelegations := &metadata.Delegations{Keys: map[string]*metadata.Key{lid: lkey}, Roles: []metadata.DelegatedRole{
		{Name: "loop", KeyIDs: []string{lid}, Threshold: 1, Paths: []string{"loop/*"}},
		{Name: "leaf", KeyIDs: []string{lid}, Threshold: 1, Paths: []string{"loop/*"}},
	}}
	handRole(t, f, "loop", 2, lk, nil, loopDelegations)
	handRole(t, f, "leaf", 1, lk, map[string][]byte{"loop/t": []byte("leaf")}, nil)
	versions["loop"], versions["leaf"] = 2, 1
	handSnapshot(t, f, versions)

	c := refreshed(t, f.device("http", nil))
	ctx := context.Background()
	for _, n := range names {
		if b, err := c.ReadTarget(ctx, n, 100); err != nil || string(b) != n {
			t.Fatalf("%s from its bin: %q %v", n, b, err)
		}
	}
	all, err := c.Targets(ctx)
	if err != nil || len(all) != len(names)+1 {
		t.Fatalf("Targets() = %v, %v: want the %d binned targets and loop/t", all, err, len(names))
	}
	if _, err := c.Target(ctx, "bins/nobody"); !errors.Is(err, tuf.ErrUnknownTarget) {
		t.Fatalf("a name no bin signs: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		b, err := c.ReadTarget(ctx, "loop/t", 100)
		if err == nil && string(b) != "leaf" {
			err = errors.New("wrong bytes")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("target behind a delegation cycle: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the walk did not end: the delegation cycle was followed")
	}
}
