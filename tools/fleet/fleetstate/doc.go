// Package fleetstate folds the messages devices publish (status, online,
// telemetry) into a table of devices, one row each, and de-duplicates
// status events on their EventID, so a redelivered or retained event is
// seen once.
//
// It is pure: topic and payload bytes in, rows and events out. It must
// never connect to a broker, read a clock or write anything; and it must
// never trust a payload's device ID over the topic it arrived on.
package fleetstate
