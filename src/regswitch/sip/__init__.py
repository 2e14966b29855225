"""Sans-IO SIP core: bytes and `now` in; events, bytes and the next deadline out.

Nothing here touches sockets, threads, the clock or global randomness.
"""
