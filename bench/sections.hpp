// bench/sections.hpp — one registration function per section of issue 4, called by main() in the
// order the suite runs them (the priority order).
#pragma once

namespace bench {

void register_get_put();        // get_put/<contender>
void register_get_put_work();   // get_put_work/<contender>, get_put_work/work_only
void register_handoff();        // handoff/<contender>/max:{1,4}
void register_scaling();        // scaling/get_put{,_burst,_walk}/<contender>/size:N, scaling/create_close/…
void register_echo();           // echo/<variant>
void register_memory();         // memory/<contender>/max:N
void register_get_put_burst();  // get_put_burst/<contender>
void register_get_put_walk();   // get_put_walk/<contender>
void register_machine();        // machine/line_round_trip

}  // namespace bench
