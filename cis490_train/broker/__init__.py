"""The broker side of Celery: the app made from settings, how messages are sent, and the transport
that runs the fleet's Redis functions instead of Lua."""
