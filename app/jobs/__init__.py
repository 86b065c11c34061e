"""Jobs: the unit of work (`job`: Job, JobResult, Progress, JobContext), the queue with its one worker
(`service`: JobService) and the API's `info` JSON of a finished job (`info`).

Imports point one way: service → job. Import from the modules; this package re-exports nothing.
"""
