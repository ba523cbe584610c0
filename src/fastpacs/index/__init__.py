"""The LMDB index: resources, their links, the change log and counters.

``schema`` says what is stored where, ``database`` opens the environment,
``reader`` answers queries from one read transaction, ``updates`` holds the
write operations, and ``writer`` runs them in batches on one thread (group
commit).
"""
