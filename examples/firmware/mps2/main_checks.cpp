// Entry point of the check image (app.cpp) on mps2.
#include "board.hpp"

int main() { return firmware_run(); }
