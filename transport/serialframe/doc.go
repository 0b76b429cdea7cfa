// Package serialframe is graft's framing for a serial line shared with
// text: versioned CBOR messages in frames with a magic, a length, a header
// check and a CRC-32, found again after noise (kernel log lines, U-Boot
// output, line glitches) by scanning for the next valid frame.
//
// The pure core is Decoder (bytes in; frames and the text between them
// out) and Encode; Peer adds request/response with IDs and timeouts over
// any io.ReadWriter (a serial port, a tty, a pty). Factory provisioning
// (agent/provision, tools/flash) and the serial console's machine mode use
// it.
//
// It never interprets a message's body: that is the caller's protocol. It
// never buffers more than one maximal frame of unread input.
package serialframe
