// Package eventseq hands out a device's status event numbers: each one
// larger than every number handed out before, across agent restarts and
// power cuts. The fleet orders a device's statuses by them rather than
// by the device's clock, which a board without an RTC sets back to 1970
// at every power cut.
//
// It keeps one small file holding a ceiling: every number handed out is
// below the ceiling on disk, and a new ceiling is written (atomically,
// fsync'd) once per Block numbers, not once per event. A restart starts
// at the ceiling, so numbers may skip but never repeat or go back.
//
// It must never hand out a number it has not first covered on disk.
package eventseq
