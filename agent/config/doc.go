// Package config reads the graft agent's configuration file: an INI-like
// text of "key = value" lines under [section] headers, with "#" comments
// (docs/config.md). Every key is known, every value is checked, and every
// refusal names the file, line and key.
//
// It only parses and checks text. It must never open the files or URLs a
// config names, run the health commands it lists, or look a board up: the
// agent does that with the values returned here.
package config
