// Package cross builds graft's binaries the way they ship — static,
// CGO_ENABLED=0, -trimpath, stripped — for every architecture graft runs
// on, and measures them: size stripped, size xz-compressed, and what each
// dependency costs in the device binary. Its tests keep the device binary
// free of cgo and of packages outside an allow-list.
package cross
