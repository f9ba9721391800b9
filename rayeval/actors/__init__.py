"""The cluster's long-lived actors: the coordinator (`coordinator`) with its on-disk index (`index`), the
concurrency limiters (`limiter`) and the Parquet writer (`writer`). The task records they keep are
typed in `rayeval.records`."""
