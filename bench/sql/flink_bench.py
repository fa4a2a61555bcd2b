"""Runs a Nexmark query of examples/nexmark/ in Apache Flink (PyFlink's local
mini-cluster, streaming mode, parallelism 1) over the benchmark's tables file, the
query's sink a filesystem table in FORMAT (json, or debezium-json for updating
results), until the bounded input ends.

    flink_bench.py TABLES.sql QUERY.sql OUTPUT_DIR FORMAT [SINK]

SINK `blackhole` keeps the query's own sink (Flink's blackhole connector) instead.

The SQL files are the ones Sluice runs: comments are dropped and statements split at
semicolons that end a line."""
import re, sys
from pyflink.table import EnvironmentSettings, TableEnvironment


def statements(path):
    text = "\n".join(line.split("--")[0] for line in open(path).read().splitlines())
    return [s.strip() for s in re.split(r";\s*\n", text + "\n") if s.strip()]


def main():
    tables, query, output, format = sys.argv[1:5]
    keep = len(sys.argv) > 5 and sys.argv[5] == "blackhole"
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("parallelism.default", "1")
    sink = f"'connector' = 'filesystem', 'path' = '{output}', 'format' = '{format}'"
    inserts = []
    for statement in statements(tables) + statements(query):
        if not keep:
            statement = statement.replace("'connector' = 'blackhole'", sink)
        if statement.upper().startswith("INSERT"):
            inserts.append(statement)
        else:
            env.execute_sql(statement)
    for insert in inserts:
        env.execute_sql(insert).wait()


main()
