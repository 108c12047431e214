"""Two ranks of an Indexed Job: rank 0 listens, rank 1 connects to it by its pod DNS name."""

import os
import pathlib
import socket
import time

index = int(os.environ["JOB_COMPLETION_INDEX"])
port_file = os.environ["PORT_FILE"]
if index == 0:
    server = socket.create_server(("127.0.0.1", 0))
    with open(port_file, "w") as handle:
        handle.write(str(server.getsockname()[1]))
    connection, _ = server.accept()
    print("rank 0 got", connection.recv(64).decode(), flush=True)
else:
    path = pathlib.Path(port_file)
    while not (path.exists() and path.read_text()):
        time.sleep(0.05)
    port = int(path.read_text())
    socket.create_connection((os.environ["MASTER_ADDR"], port)).sendall(b"hello from rank 1")
    print("rank 1 reached", os.environ["MASTER_ADDR"], "as", os.environ["HOSTNAME"], flush=True)
