package transport

import (
	"fmt"
	"slices"
)

// KindInventory is the topic kind of a device's inventory.
const KindInventory = "inventory"

// InventoryTopic carries a device's retained inventory: what it is and
// which groups it follows, published on every connect. Older fleets do not
// subscribe to it; older devices do not send it.
func InventoryTopic(device string) string { return devTopic(device, KindInventory) }

// Inventory limits.
const (
	maxInventoryList = 64
)

// Inventory is what a device says about itself, so the fleet learns its
// groups (for group rollouts), board and labels from the devices rather
// than from a list kept apart.
type Inventory struct {
	Device       string            `cbor:"1,keyasint" json:"device"`
	Board        string            `cbor:"2,keyasint,omitempty" json:"board,omitempty"`
	Arch         string            `cbor:"3,keyasint,omitempty" json:"arch,omitempty"` // GOARCH of the agent
	Groups       []string          `cbor:"4,keyasint,omitempty" json:"groups,omitempty"`
	Labels       map[string]string `cbor:"5,keyasint,omitempty" json:"labels,omitempty"` // e.g. cluster=ceph-a
	AgentVersion string            `cbor:"6,keyasint,omitempty" json:"agent_version,omitempty"`
}

// Check reports whether inv is an inventory this contract accepts.
func (inv Inventory) Check() error {
	if err := firstErr(
		checkDevice(inv.Device),
		checkText("board", inv.Board, false, maxName),
		checkText("arch", inv.Arch, false, maxName),
		checkText("agent version", inv.AgentVersion, false, maxName),
	); err != nil {
		return err
	}
	if len(inv.Groups) > maxInventoryList || len(inv.Labels) > maxInventoryList {
		return fmt.Errorf("%w: more than %d groups or labels", ErrMalformed, maxInventoryList)
	}
	for _, g := range inv.Groups {
		if err := ValidID(g); err != nil {
			return fmt.Errorf("%w: group: %w", ErrMalformed, err)
		}
	}
	for k, v := range inv.Labels {
		if err := ValidID(k); err != nil {
			return fmt.Errorf("%w: label key: %w", ErrMalformed, err)
		}
		if err := checkText("label "+k, v, false, maxName); err != nil {
			return err
		}
	}
	return nil
}

// EncodeInventory checks inv and encodes it deterministically (groups
// sorted).
func EncodeInventory(inv Inventory) ([]byte, error) {
	if err := inv.Check(); err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	inv.Groups = slices.Sorted(slices.Values(inv.Groups))
	return encode(inv)
}

// DecodeInventory strictly decodes and checks an inventory.
func DecodeInventory(data []byte) (Inventory, error) {
	var inv Inventory
	if err := decodeMap(data, keyIn(1, 6), &inv); err != nil {
		return Inventory{}, fmt.Errorf("decode inventory: %w", err)
	}
	if err := inv.Check(); err != nil {
		return Inventory{}, fmt.Errorf("decode inventory: %w", err)
	}
	return inv, nil
}
