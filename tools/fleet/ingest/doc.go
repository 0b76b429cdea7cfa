// Package ingest is a fleet ingester on an external MQTT broker: it
// follows the devices' telemetry (and, if asked, their statuses and online
// flags) and stores it in a fleet database. With a share name it
// subscribes through an MQTT shared subscription ($share/NAME/…), so
// several ingesters split one stream between them and the stream scales
// with the broker cluster, not with one process.
package ingest
