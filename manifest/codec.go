package manifest

import (
	"fmt"
	"maps"
	"slices"

	"github.com/fxamacker/cbor/v2"
)

// Wire keys; docs/manifest.cddl is the specification, keep them in step.
const (
	// manifest map
	keyFormat          = 0
	keyName            = 1
	keyVersion         = 2
	keyDeviceClass     = 3
	keySequence        = 4
	keyBoards          = 5
	keyArch            = 6
	keyMinAgentVersion = 7
	keyComponents      = 8

	// component map; the body key matches the kind
	keyComponentKind        = 0
	keyComponentName        = 1
	keyComponentImage       = 2 // kind 1
	keyComponentUserPatch   = 3 // kind 2
	keyComponentKernelPatch = 4 // kind 3

	// userspace live-patch map
	keyUserSoname   = 0
	keyUserBundles  = 1
	keyUserFallback = 2

	// bundle map
	keyBundleBuildID = 0
	keyBundleTarget  = 1
	keyBundleSHA256  = 2

	// kernel live-patch map
	keyKernelTarget   = 0
	keyKernelSHA256   = 1
	keyKernelRelease  = 2
	keyKernelName     = 3
	keyKernelReplace  = 4
	keyKernelFallback = 5
	keyKernelParams   = 6

	// image map
	keyImageSlotGroup   = 0
	keyImageTarget      = 1
	keyImageSize        = 2
	keyImageSHA256      = 3
	keyImageCompression = 4

	// Keys from here up are extensions in every map: ignored when decoding.
	firstExtensionKey = 256
)

var (
	manifestKeys = map[uint64]string{
		keyFormat:          "format",
		keyName:            "name",
		keyVersion:         "version",
		keyDeviceClass:     "device class",
		keySequence:        "sequence",
		keyBoards:          "boards",
		keyArch:            "arch",
		keyMinAgentVersion: "min agent version",
		keyComponents:      "components",
	}
	// componentKeys holds the keys every component has; bodyKeys the one
	// body key each kind adds.
	componentKeys = map[uint64]string{
		keyComponentKind: "kind",
		keyComponentName: "name",
	}
	bodyKeys = map[ComponentKind]struct {
		key  uint64
		name string
	}{
		KindImage:       {keyComponentImage, "image"},
		KindUserPatch:   {keyComponentUserPatch, "userspace patch"},
		KindKernelPatch: {keyComponentKernelPatch, "kernel patch"},
	}
	userPatchKeys = map[uint64]string{
		keyUserSoname:   "soname",
		keyUserBundles:  "bundles",
		keyUserFallback: "fallback",
	}
	bundleKeys = map[uint64]string{
		keyBundleBuildID: "build id",
		keyBundleTarget:  "target",
		keyBundleSHA256:  "sha256",
	}
	kernelPatchKeys = map[uint64]string{
		keyKernelTarget:   "target",
		keyKernelSHA256:   "sha256",
		keyKernelRelease:  "release",
		keyKernelName:     "name",
		keyKernelReplace:  "replace",
		keyKernelFallback: "fallback",
		keyKernelParams:   "params",
	}
	imageKeys = map[uint64]string{
		keyImageSlotGroup:   "slot group",
		keyImageTarget:      "target",
		keyImageSize:        "size",
		keyImageSHA256:      "sha256",
		keyImageCompression: "compression",
	}
)

// Decoder limits, on top of MaxSize. A format-1 manifest nests four deep
// (manifest, components, component, image); the rest is room for
// extension values.
const (
	maxNestedLevels  = 8
	maxArrayElements = 256 // also the most boards and components Validate allows
	maxMapPairs      = 64
)

var decMode, encMode = modes()

func modes() (cbor.DecMode, cbor.EncMode) {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
		MaxNestedLevels:  maxNestedLevels,
		MaxArrayElements: maxArrayElements,
		MaxMapPairs:      maxMapPairs,
	}.DecMode()
	if err != nil {
		panic("manifest: decoder options: " + err.Error())
	}
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("manifest: encoder options: " + err.Error())
	}
	return dm, em
}

// Decode reads one manifest from b, strictly. b must hold exactly one CBOR
// data item of at most MaxSize bytes, and the manifest must pass Validate.
// Errors wrap ErrTooLarge, ErrMalformed, ErrUnsupportedFormat,
// ErrUnknownKey or ErrInvalid, and name the field that failed.
func Decode(b []byte) (*Manifest, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("manifest: %d bytes, limit %d: %w", len(b), MaxSize, ErrTooLarge)
	}
	// The whole input first: limits, no tags, no indefinite lengths,
	// nothing after the item.
	if err := decMode.Wellformed(b); err != nil {
		return nil, fmt.Errorf("manifest: strict CBOR: %w: %w", err, ErrMalformed)
	}
	top, err := readObject(b, "", manifestKeys)
	if err != nil {
		return nil, err
	}
	// The format decides what the other keys mean, so it comes first: a
	// newer manifest is "unsupported format", not "unknown key".
	format := top.uint(keyFormat, true)
	if top.err == nil && format != FormatVersion {
		return nil, fmt.Errorf("manifest: format %d, this agent reads %d: %w", format, FormatVersion, ErrUnsupportedFormat)
	}
	top.checkKeys()
	m := &Manifest{
		Format:          FormatVersion,
		Name:            top.text(keyName, true),
		Version:         top.text(keyVersion, true),
		DeviceClass:     top.text(keyDeviceClass, false),
		Sequence:        top.uint(keySequence, true),
		Boards:          top.texts(keyBoards, true),
		Arch:            top.text(keyArch, false),
		MinAgentVersion: top.text(keyMinAgentVersion, false),
	}
	comps := top.array(keyComponents, true)
	if top.err != nil {
		return nil, top.err
	}
	m.Components = make([]Component, 0, len(comps))
	for i, raw := range comps {
		c, err := decodeComponent(raw, fmt.Sprintf("components[%d]", i))
		if err != nil {
			return nil, err
		}
		m.Components = append(m.Components, c)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeComponent(raw cbor.RawMessage, path string) (Component, error) {
	o, err := readObject(raw, path, componentKeys)
	if err != nil {
		return Component{}, err
	}
	// Like the format: the kind decides which keys exist.
	kind := ComponentKind(o.uint(keyComponentKind, true))
	body, ok := bodyKeys[kind]
	if o.err == nil && !ok {
		return Component{}, invalid(o.field(keyComponentKind), "unknown component kind %d (this agent knows 1 image, 2 userspace live patch, 3 kernel live patch)", uint(kind))
	}
	o.keys = map[uint64]string{keyComponentKind: "kind", keyComponentName: "name", body.key: body.name}
	o.checkKeys()
	c := Component{Kind: kind, Name: o.text(keyComponentName, true)}
	bodyRaw := o.get(body.key, majorMap, true)
	if o.err != nil {
		return Component{}, o.err
	}
	switch kind {
	case KindImage:
		c.Image, err = decodeImage(bodyRaw, o.field(body.key))
	case KindUserPatch:
		c.UserPatch, err = decodeUserPatch(bodyRaw, o.field(body.key))
	case KindKernelPatch:
		c.KernelPatch, err = decodeKernelPatch(bodyRaw, o.field(body.key))
	}
	return c, err
}

func decodeImage(raw cbor.RawMessage, path string) (*Image, error) {
	im, err := readObject(raw, path, imageKeys)
	if err != nil {
		return nil, err
	}
	im.checkKeys()
	img := &Image{
		SlotGroup: im.text(keyImageSlotGroup, true),
		Target:    im.text(keyImageTarget, true),
		Size:      im.uint(keyImageSize, true),
		SHA256:    im.bytes(keyImageSHA256, true),
	}
	comp := im.uint(keyImageCompression, true)
	if im.err != nil {
		return nil, im.err
	}
	if comp > uint64(CompressionZstd) {
		return nil, invalid(im.field(keyImageCompression), "unknown compression %d", comp)
	}
	img.Compression = Compression(comp)
	return img, nil
}

func decodeUserPatch(raw cbor.RawMessage, path string) (*UserPatch, error) {
	o, err := readObject(raw, path, userPatchKeys)
	if err != nil {
		return nil, err
	}
	o.checkKeys()
	u := &UserPatch{
		Soname:   o.text(keyUserSoname, true),
		Fallback: o.text(keyUserFallback, false),
	}
	items := o.array(keyUserBundles, true)
	if o.err != nil {
		return nil, o.err
	}
	for i, item := range items {
		b, err := readObject(item, fmt.Sprintf("%s[%d]", o.field(keyUserBundles), i), bundleKeys)
		if err != nil {
			return nil, err
		}
		b.checkKeys()
		u.Bundles = append(u.Bundles, PatchBundle{
			BuildID: b.bytes(keyBundleBuildID, true),
			Target:  b.text(keyBundleTarget, true),
			SHA256:  b.bytes(keyBundleSHA256, true),
		})
		if b.err != nil {
			return nil, b.err
		}
	}
	return u, nil
}

func decodeKernelPatch(raw cbor.RawMessage, path string) (*KernelPatch, error) {
	o, err := readObject(raw, path, kernelPatchKeys)
	if err != nil {
		return nil, err
	}
	o.checkKeys()
	k := &KernelPatch{
		Target:   o.text(keyKernelTarget, true),
		SHA256:   o.bytes(keyKernelSHA256, true),
		Release:  o.text(keyKernelRelease, true),
		Name:     o.text(keyKernelName, true),
		Replace:  o.boolean(keyKernelReplace),
		Fallback: o.text(keyKernelFallback, false),
		Params:   o.texts(keyKernelParams, false),
	}
	return k, o.err
}

// Encode validates m and returns its core deterministic CBOR encoding
// (RFC 8949 section 4.2.1): the same manifest always gives the same bytes,
// and Decode gives back an equal manifest. Optional fields that are empty
// are left out.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	comps := make([]any, len(m.Components))
	for i, c := range m.Components {
		comps[i] = map[uint64]any{
			keyComponentKind:     uint64(c.Kind),
			keyComponentName:     c.Name,
			bodyKeys[c.Kind].key: encodeBody(&c),
		}
	}
	top := map[uint64]any{
		keyFormat:     uint64(m.Format),
		keyName:       m.Name,
		keyVersion:    m.Version,
		keySequence:   m.Sequence,
		keyBoards:     m.Boards,
		keyComponents: comps,
	}
	for k, s := range map[uint64]string{keyDeviceClass: m.DeviceClass, keyArch: m.Arch, keyMinAgentVersion: m.MinAgentVersion} {
		if s != "" {
			top[k] = s
		}
	}
	b, err := encMode.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("manifest: encode: %w", err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("manifest: encoded manifest is %d bytes, limit %d: %w", len(b), MaxSize, ErrTooLarge)
	}
	return b, nil
}

func encodeBody(c *Component) map[uint64]any {
	switch c.Kind {
	case KindUserPatch:
		u := c.UserPatch
		bundles := make([]any, len(u.Bundles))
		for i, b := range u.Bundles {
			bundles[i] = map[uint64]any{keyBundleBuildID: b.BuildID, keyBundleTarget: b.Target, keyBundleSHA256: b.SHA256}
		}
		m := map[uint64]any{keyUserSoname: u.Soname, keyUserBundles: bundles}
		if u.Fallback != "" {
			m[keyUserFallback] = u.Fallback
		}
		return m
	case KindKernelPatch:
		k := c.KernelPatch
		m := map[uint64]any{keyKernelTarget: k.Target, keyKernelSHA256: k.SHA256, keyKernelRelease: k.Release, keyKernelName: k.Name}
		if k.Replace {
			m[keyKernelReplace] = true
		}
		if k.Fallback != "" {
			m[keyKernelFallback] = k.Fallback
		}
		if len(k.Params) > 0 {
			m[keyKernelParams] = k.Params
		}
		return m
	}
	im := c.Image
	return map[uint64]any{
		keyImageSlotGroup:   im.SlotGroup,
		keyImageTarget:      im.Target,
		keyImageSize:        im.Size,
		keyImageSHA256:      im.SHA256,
		keyImageCompression: uint64(im.Compression),
	}
}

// CBOR major types.
type majorType byte

const (
	majorUint   majorType = 0
	majorBytes  majorType = 2
	majorText   majorType = 3
	majorArray  majorType = 4
	majorMap    majorType = 5
	majorSimple majorType = 7
)

func (t majorType) String() string {
	return [...]string{"unsigned integer", "negative integer", "byte string", "text string",
		"array", "map", "tag", "simple value or float"}[t&7]
}

// object is one CBOR map of the manifest being read. Its methods record the
// first error in err and return zero values after it, so a decoder can
// read several fields and check once.
type object struct {
	path   string            // e.g. "components[0].image"; "" for the manifest
	keys   map[uint64]string // the core keys this map defines
	fields map[uint64]cbor.RawMessage
	err    error
}

// readObject decodes raw, which must be a map with unsigned integer keys
// and no duplicates.
func readObject(raw []byte, path string, keys map[uint64]string) (*object, error) {
	o := &object{path: path, keys: keys}
	where := o.where()
	if got := majorType(raw[0] >> 5); got != majorMap {
		return nil, fmt.Errorf("manifest: %s: want map, got %s: %w", where, got, ErrMalformed)
	}
	if err := decMode.Unmarshal(raw, &o.fields); err != nil {
		return nil, fmt.Errorf("manifest: %s: %w: %w", where, err, ErrMalformed)
	}
	return o, nil
}

func (o *object) field(key uint64) string {
	name, ok := o.keys[key]
	if !ok {
		name = fmt.Sprintf("key %d", key)
	}
	if o.path == "" {
		return name
	}
	return o.path + "." + name
}

// checkKeys applies the unknown-key rule: a key below firstExtensionKey
// that the format does not define is refused; extension values are only
// checked to be strict CBOR (no duplicate keys, valid UTF-8) and ignored.
func (o *object) checkKeys() {
	if o.err != nil {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(o.fields)) {
		if k >= firstExtensionKey {
			var v any
			if err := decMode.Unmarshal(o.fields[k], &v); err != nil {
				o.err = fmt.Errorf("manifest: %s: extension: %w: %w", o.field(k), err, ErrMalformed)
				return
			}
			continue
		}
		if _, ok := o.keys[k]; !ok {
			o.err = fmt.Errorf("manifest: %s: key %d is not defined by format %d (keys 0..%d belong to the format, extensions use %d and up): %w",
				o.where(), k, FormatVersion, firstExtensionKey-1, firstExtensionKey, ErrUnknownKey)
			return
		}
	}
}

// where names the map in messages.
func (o *object) where() string {
	if o.path == "" {
		return "top level"
	}
	return o.path
}

// get returns the raw value of key after checking its major type, or nil
// when it is absent (an error if required).
func (o *object) get(key uint64, want majorType, required bool) cbor.RawMessage {
	if o.err != nil {
		return nil
	}
	raw, ok := o.fields[key]
	if !ok {
		if required {
			o.err = invalid(o.field(key), "missing")
		}
		return nil
	}
	if got := majorType(raw[0] >> 5); got != want {
		o.err = fmt.Errorf("manifest: %s: want %s, got %s: %w", o.field(key), want, got, ErrMalformed)
		return nil
	}
	return raw
}

func (o *object) decode(key uint64, raw []byte, v any) {
	if err := decMode.Unmarshal(raw, v); err != nil {
		o.err = fmt.Errorf("manifest: %s: %w: %w", o.field(key), err, ErrMalformed)
	}
}

func (o *object) uint(key uint64, required bool) uint64 {
	var v uint64
	if raw := o.get(key, majorUint, required); raw != nil {
		o.decode(key, raw, &v)
	}
	return v
}

// text reads a text string. Present means non-empty: an optional field
// with no value is left out, so it has one encoding.
func (o *object) text(key uint64, required bool) string {
	var s string
	if raw := o.get(key, majorText, required); raw != nil {
		o.decode(key, raw, &s)
		if o.err == nil && s == "" {
			o.err = invalid(o.field(key), "empty")
		}
	}
	return s
}

// boolean reads an optional boolean; absent is false. Writers leave false
// out, so it has one encoding; an explicit false is still accepted.
func (o *object) boolean(key uint64) bool {
	var v bool
	if raw := o.get(key, majorSimple, false); raw != nil {
		o.decode(key, raw, &v)
	}
	return v
}

func (o *object) bytes(key uint64, required bool) []byte {
	var b []byte
	if raw := o.get(key, majorBytes, required); raw != nil {
		o.decode(key, raw, &b)
	}
	return b
}

func (o *object) array(key uint64, required bool) []cbor.RawMessage {
	var items []cbor.RawMessage
	if raw := o.get(key, majorArray, required); raw != nil {
		o.decode(key, raw, &items)
	}
	return items
}

func (o *object) texts(key uint64, required bool) []string {
	items := o.array(key, required)
	if o.err != nil || items == nil {
		return nil
	}
	out := make([]string, len(items))
	for i, raw := range items {
		field := fmt.Sprintf("%s[%d]", o.field(key), i)
		if got := majorType(raw[0] >> 5); got != majorText {
			o.err = fmt.Errorf("manifest: %s: want text string, got %s: %w", field, got, ErrMalformed)
			return nil
		}
		if err := decMode.Unmarshal(raw, &out[i]); err != nil {
			o.err = fmt.Errorf("manifest: %s: %w: %w", field, err, ErrMalformed)
			return nil
		}
	}
	return out
}
