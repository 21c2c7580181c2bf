"""SSH to the CI hosts: one connection per host, detached runs followed to their end, remote files."""
