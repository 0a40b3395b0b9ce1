"""The built-in benchmark's generator: job plan, random structures, reflection families,
engines (local processes, Ray) and the on-the-fly stream."""
