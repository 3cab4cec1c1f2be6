"""The local AWS: a moto server on loopback, reached over HTTP like the real thing."""
