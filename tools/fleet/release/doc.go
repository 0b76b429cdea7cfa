// Package release turns an image and a release description into what the
// fleet publishes: the manifest (size and SHA-256 of the uncompressed
// image, the bytes that land in the slot), the payload stream (the image,
// compressed if asked), and the target names they are published under. It
// also checks a new release against the ones already published: no
// duplicate names, and a sequence above every earlier release of the same
// device class (the agent refuses to go back).
//
// It is pure: readers and writers in, values out. It must never touch a
// repository, the file system or the network, and never sign anything.
package release
