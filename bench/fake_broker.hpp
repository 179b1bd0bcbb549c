#pragma once
// Minimal in-memory AMQP sink for measuring mqnode-bench's own ceiling; see
// fake_broker.cpp. Runs until SIGINT/SIGTERM or `seconds` (0 = forever).
int run_fake_broker(int port, double seconds);
