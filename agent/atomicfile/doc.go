// Package atomicfile replaces files so that a power cut at any instant
// leaves either the old content or the new, never a mix: write a temporary
// file in the same directory, fsync it, rename it over the target, fsync
// the directory.
//
// It must never write the target in place.
package atomicfile
