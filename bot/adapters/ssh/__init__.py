"""SSH to the CI hosts: a connection per host, detached runs followed to their end, remote files."""
