package provision

// Proto is the provisioning protocol's version, sent in Hello.
const Proto = 1

// Request types.
const (
	TypeHello    = "hello"
	TypeIdentity = "identity"
	TypeInstall  = "install"
	TypeImage    = "image"
	TypeFinish   = "finish"
	TypeReboot   = "reboot"
	// TypeProgress is the event the device sends while a step works.
	TypeProgress = "progress"
)

// Error codes a device answers with (serialframe.RemoteError.Code).
const (
	CodeProvisioned = "provisioned" // already provisioned; force to do it again
	CodeWrongBoard  = "wrong-board" // the release is not for this board or arch
	CodeUntrusted   = "untrusted"   // TUF refused metadata or the image (tampered, expired, unsigned)
	CodeTransfer    = "transfer"    // the image did not arrive whole: run the step again to resume
	CodeWrite       = "write"       // a slot or the environment could not be written or read back
	CodeBadRequest  = "bad-request" // the request is malformed or out of order
	CodeMismatch    = "mismatch"    // the certificate is not for this device's key or ID
	CodeInternal    = "internal"    // anything else
)

// Device states in Hello.State.
const (
	StateBlank       = "blank"       // nothing done yet
	StateInProgress  = "in-progress" // some steps done (Step says which)
	StateProvisioned = "provisioned" // finished; Release and ID say what
)

// Hello is the device's answer to TypeHello.
type Hello struct {
	Proto      int      `cbor:"1,keyasint"`
	Agent      string   `cbor:"2,keyasint"`           // graft-agent version
	Board      string   `cbor:"3,keyasint"`           // board name (boards/)
	Arch       string   `cbor:"4,keyasint"`           // GOARCH of the board
	Compatible []string `cbor:"5,keyasint,omitempty"` // device-tree compatible strings
	Serial     string   `cbor:"6,keyasint"`           // SoC serial number
	MACs       []string `cbor:"7,keyasint,omitempty"`
	Storage    uint64   `cbor:"8,keyasint"` // bytes of the disk holding the slots
	State      string   `cbor:"9,keyasint"`
	Step       string   `cbor:"10,keyasint,omitempty"` // last step completed
	ID         string   `cbor:"11,keyasint,omitempty"` // device ID, once assigned
	Release    string   `cbor:"12,keyasint,omitempty"` // release on the slots, once written
	CertSHA256 []byte   `cbor:"13,keyasint,omitempty"` // installed certificate's fingerprint
}

// IdentityRequest assigns the device its ID.
type IdentityRequest struct {
	ID    string `cbor:"1,keyasint"`
	Force bool   `cbor:"2,keyasint,omitempty"` // new key even if provisioned
}

// IdentityResponse carries the certificate request for the device's key.
type IdentityResponse struct {
	CSR []byte `cbor:"1,keyasint"` // DER
	// CertSHA256 is set when a certificate for this key and ID is
	// already installed: the station need not sign again.
	CertSHA256 []byte `cbor:"2,keyasint,omitempty"`
}

// InstallRequest carries what makes the device part of the fleet.
type InstallRequest struct {
	Cert     []byte `cbor:"1,keyasint"` // PEM, signed by the fleet CA
	Config   []byte `cbor:"2,keyasint"` // agent.conf, rendered for this device
	BrokerCA []byte `cbor:"3,keyasint"` // PEM
	TUFRoot  []byte `cbor:"4,keyasint"` // root.json
}

// ImageRequest names the release to write and where to fetch it.
type ImageRequest struct {
	Release     string   `cbor:"1,keyasint"`
	MetadataURL string   `cbor:"2,keyasint"`
	TargetsURL  string   `cbor:"3,keyasint"`
	Slots       []string `cbor:"4,keyasint,omitempty"` // default ["A"]
}

// ImageResponse says what was written.
type ImageResponse struct {
	Release  string   `cbor:"1,keyasint"`
	Version  string   `cbor:"2,keyasint"`
	Sequence uint64   `cbor:"3,keyasint"`
	SHA256   []byte   `cbor:"4,keyasint"` // of the image, read back from each slot
	Size     uint64   `cbor:"5,keyasint"`
	Slots    []string `cbor:"6,keyasint"`
	Fetched  int64    `cbor:"7,keyasint"` // bytes fetched by this call (0 when already written)
	Millis   int64    `cbor:"8,keyasint"` // time this call spent on the image
}

// FinishResponse is the device's final account.
type FinishResponse struct {
	ID         string            `cbor:"1,keyasint"`
	Release    string            `cbor:"2,keyasint"`
	CertSHA256 []byte            `cbor:"3,keyasint"`
	BootEnv    map[string]string `cbor:"4,keyasint"` // the boot state read back
}

// Progress is a TypeProgress event.
type Progress struct {
	Step  string `cbor:"1,keyasint"`
	Done  int64  `cbor:"2,keyasint"`
	Total int64  `cbor:"3,keyasint"`
}
