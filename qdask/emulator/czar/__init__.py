"""The stand-in's czar: the per-catalog MariaDB databases it reads (`databases`), and a front end that
answers as Qserv's does — its proxy (`proxy`), parser rules (`rules`), query analysis (`analysis`,
`catalog`, `joins`), scisql functions (`functions`) and errors (`errors`) — over the MySQL protocol
(`frontend`)."""
