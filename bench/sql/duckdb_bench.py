"""Times a Nexmark query in DuckDB as a batch job over a JSON lines file of events
(2 threads, read_ndjson), materializing the result. Prints the seconds it took."""
import sys, time
import duckdb

QUERIES = {
    "q0": "SELECT Bid.auction, Bid.bidder, Bid.price, Bid.date_time, Bid.extra FROM ev WHERE Bid IS NOT NULL",
    "q1": "SELECT Bid.auction, Bid.bidder, 0.908 * Bid.price AS price, Bid.date_time, Bid.extra FROM ev WHERE Bid IS NOT NULL",
    "q2": "SELECT Bid.auction, Bid.price FROM ev WHERE Bid IS NOT NULL AND Bid.auction % 123 = 0",
    "q5t": "SELECT Bid.auction, time_bucket(INTERVAL 10 SECOND, to_timestamp(Bid.date_time / 1000)) AS w, count(*) FROM ev WHERE Bid IS NOT NULL GROUP BY 1, 2",
}

def main():
    query, path = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    con.execute("SET threads = 2")
    columns = ("{'Person': 'STRUCT(id BIGINT, date_time BIGINT)', 'Auction': 'STRUCT(id BIGINT, date_time BIGINT)', "
               "'Bid': 'STRUCT(auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time BIGINT, extra VARCHAR)'}")
    started = time.perf_counter()
    con.execute(f"CREATE TEMP VIEW ev AS SELECT * FROM read_ndjson('{path}', columns={columns})")
    con.execute(f"CREATE TEMP TABLE result AS {QUERIES[query]}")
    print(f"{time.perf_counter() - started:.3f}")

main()
