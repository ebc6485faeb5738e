"""Launch gcloud-tasks-emulator bound to 127.0.0.1 (it binds every interface by itself).

Runs under the emulator's own virtualenv (it pins protobuf<5), so it imports nothing from heimdex:
    .venv-tasks/bin/python tasks_emulator.py start --port P -r N
"""

import grpc._server

_add_insecure_port = grpc._server._Server.add_insecure_port


def _loopback_only(self, address):
    return _add_insecure_port(self, address.replace("[::]", "127.0.0.1"))


grpc._server._Server.add_insecure_port = _loopback_only

if __name__ == "__main__":
    from gcloud_tasks_emulator.__main__ import main

    main()
