// `picopay demo`: the end-to-end pay-per-use demo (private mosquitto, dev chain, hub,
// payee, N metered devices, reconciliation, on-chain settlement).
#pragma once

// argv[0] is "demo". Returns the process exit status (0: everything reconciled).
int picopay_demo_main(int argc, char** argv);
