"""Pure logic: no subprocess, no file, no environment."""
