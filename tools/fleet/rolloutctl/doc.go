// Package rolloutctl is the rollout controller that runs inside
// `graft-fleet serve`. Each step it reads every running rollout from the
// fleet's database, asks tools/fleet/rollout what to do, stores the
// decision, and only then acts: it notifies each device on its own topic
// (retained, QoS 1, with a notice ID kept in the database), marks silent
// devices timed out, pauses a rollout whose failures cross its threshold,
// and moves to the next wave after the soak. Devices' statuses reach it
// through Observe once serve has stored them.
//
// Because every notice is recorded before it is sent, a controller that
// restarts never sends a device a second notice in the same rollout: it
// re-sends the recorded one (same notice ID, which the agent takes as a
// redelivery), since serve's broker forgot its retained messages.
package rolloutctl
