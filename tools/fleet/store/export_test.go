package store

import "context"

// Exec runs a statement; tests only.
func (s *Store) Exec(ctx context.Context, q string) error {
	_, err := s.db.ExecContext(ctx, q)
	return err
}

// Migrations are the schema steps; tests only.
var Migrations = migrations
