"""Host adapters: the only modules that run subprocesses or read the host's files."""
