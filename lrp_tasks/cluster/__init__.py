"""Ray, and nothing else imports it: the actor pool that runs an audit's shards, Ray tasks for
per-class analyses, and the private loopback-only local Ray a run starts when no cluster is given."""
