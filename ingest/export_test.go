package ingest

// SetAfterDeadLetterPublish has i call hook between each dead letter's
// publish and its mark's update, for tests that kill a writer there. Call it
// before Run.
func SetAfterDeadLetterPublish(i *Ingester, hook func() error) { i.afterDeadLetterPublish = hook }
