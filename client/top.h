/*
 * top: `ferry top`, a live view of a broker from its Stats, refreshed every
 * --interval seconds (default 1): per function the call rate, p50/p99
 * latency (with the broker's --metrics), failures and queue depth; engines'
 * slots and workers' credit with their load. --once prints one screen (two
 * Stats one interval apart: rates need two) and exits; --json prints the
 * same data as one JSON object per screen.
 */
#ifndef CLIENT_TOP_H
#define CLIENT_TOP_H

/* argv[1] is "top". Returns the exit status (0, 2 bad usage, 3 no broker). */
int client_top_main(int argc, char **argv);

#endif
