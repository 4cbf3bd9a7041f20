"""A faithful local stand-in for Qserv's ingest services (API version 55), storing data in MariaDB.

What runs (one process, one event loop):

* the Master Replication Controller REST API (``controller/``, one module per Qserv controller module);
* N Worker Ingest Servers (``worker/``, one module per Qserv worker service), each with an HTTP port and
  a binary-protocol ``loader-port``, registered in the controller's worker registry; clients learn them
  only from the location services;
* a czar (``czar/``): after publish, MariaDB database ``<db>`` where partitioned tables are MERGE
  tables over the workers' chunk tables and regular tables read as themselves (``czar/databases.py``);
  clients query it through the czar front end (``czar/frontend.py``, port 4040, user ``qsmaster``),
  which answers as Qserv's proxy and czar do (see docs/czar.md).

Start it:

* command line: ``qdask emulator serve [--workers N] [--mariadb DSN] [--port P] [--auth-key K]
  [--czar-port 4040]`` (no ``--mariadb``: a private MariaDB is started and removed on exit); prints the
  controller URL, the czar DSN and the worker URLs;
* Python: ``with EmulatorThread(dsn, workers=3, auth_key="k") as qserv: ...`` (``server.py``), or
  ``await Emulator(EmulatorConfig(dsn=...)).start()`` inside an event loop;
* pytest: the ``qserv`` fixture of ``tests/emulator/conftest.py``.

Storage follows Qserv (``storage.py``): MyISAM, ``qserv_trans_id`` first, ``PARTITION BY LIST`` with
``p0`` and ``p<T>`` per transaction, chunk/overlap/dummy tables, the worker's own ``LOAD DATA``
statement, run server-side (``LOAD DATA INFILE``, as Qserv's worker does) whenever MariaDB can read the
stand-in's temporary files, else ``LOCAL`` (``storage.server_reads``). The two differ in what a bad value
does: server-side into MyISAM under the default strict ``sql_mode``, a bad first row is an error (the
contribution is LOAD_FAILED) and bad later rows are warnings; ``LOCAL`` makes every one a warning.
Controller records are typed (``records.py``; states and statuses in ``contract.py``) and
persist in ``<instance>_replica`` (``state.py``); faults are injected at run time (``faults.py``).
Answers follow Qserv's source (``protocol.py`` holds its envelope, parameter and error rules).
"""

from qdask.emulator.server import Emulator, EmulatorConfig, EmulatorThread

__all__ = ["Emulator", "EmulatorConfig", "EmulatorThread"]
