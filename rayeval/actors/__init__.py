"""Ray actors: the coordinator, concurrency limiters, inference and scoring stages."""
