# Charts for docs/benchmarks/, drawn from the data files bench/report.py
# writes (one row per group, columns: raw, plexus, dbus-broker, dbus-daemon;
# "?" where a bus has no figure).
#
#   gnuplot -e "datadir='DIR'" -e "outdir='DIR'" bench/charts.gp

load datadir."/modes.gp"
n_modes = have_pinned + have_unpinned
if (n_modes == 0) exit

set terminal pngcairo size 1100,480 font "sans,10"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key top left
set format y "%.0f"

c_raw = "#999999"
c_plexus = "#1b9e77"
c_broker = "#d95f02"
c_daemon = "#7570b3"

# --- call round trip ------------------------------------------------------
set output outdir."/rtt.png"
set multiplot layout 1,n_modes title "Call round trip (lower is better)"
set ylabel "microseconds"
if (have_pinned) {
    set title "pinned: every process on CPU 0"
    plot datadir."/rtt-pinned.dat" u 2:xtic(1) t "raw SEQPACKET (floor)" lc rgb c_raw, \
         '' u 3 t "plexus" lc rgb c_plexus, \
         '' u 4 t "dbus-broker" lc rgb c_broker, \
         '' u 5 t "dbus-daemon" lc rgb c_daemon
}
if (have_unpinned) {
    set title "unpinned"
    plot datadir."/rtt-unpinned.dat" u 2:xtic(1) t "raw SEQPACKET (floor)" lc rgb c_raw, \
         '' u 3 t "plexus" lc rgb c_plexus, \
         '' u 4 t "dbus-broker" lc rgb c_broker, \
         '' u 5 t "dbus-daemon" lc rgb c_daemon
}
unset multiplot

# --- pipelined calls --------------------------------------------------------
set terminal pngcairo size 700,480 font "sans,10"
set output outdir."/pipeline.png"
set title "Pipelined calls, 64 B (higher is better)"
set ylabel "calls per second"
plot datadir."/pipeline.dat" u 2:xtic(1) t "raw SEQPACKET (floor)" lc rgb c_raw, \
     '' u 3 t "plexus" lc rgb c_plexus, \
     '' u 4 t "dbus-broker" lc rgb c_broker, \
     '' u 5 t "dbus-daemon" lc rgb c_daemon

# --- fan-out ----------------------------------------------------------------
set terminal pngcairo size 1100,480 font "sans,10"
set output outdir."/fanout.png"
set multiplot layout 1,n_modes title "Publish fan-out, 64 B signals (higher is better)"
set ylabel "messages delivered per second"
set xlabel "subscribers"
if (have_pinned) {
    set title "pinned"
    plot datadir."/fanout-pinned.dat" u 3:xtic(1) t "plexus" lc rgb c_plexus, \
         '' u 4 t "dbus-broker" lc rgb c_broker, \
         '' u 5 t "dbus-daemon" lc rgb c_daemon
}
if (have_unpinned) {
    set title "unpinned"
    plot datadir."/fanout-unpinned.dat" u 3:xtic(1) t "plexus" lc rgb c_plexus, \
         '' u 4 t "dbus-broker" lc rgb c_broker, \
         '' u 5 t "dbus-daemon" lc rgb c_daemon
}
unset multiplot
unset xlabel

# --- connection set-up ------------------------------------------------------
set terminal pngcairo size 700,480 font "sans,10"
set output outdir."/connect.png"
set title "Connection set-up: connect + hello + disconnect (higher is better)"
set ylabel "connections per second"
plot datadir."/connect.dat" u 2:xtic(1) t "raw SEQPACKET (floor)" lc rgb c_raw, \
     '' u 3 t "plexus" lc rgb c_plexus, \
     '' u 4 t "dbus-broker" lc rgb c_broker, \
     '' u 5 t "dbus-daemon" lc rgb c_daemon

# --- idle clients -----------------------------------------------------------
set terminal pngcairo size 1100,480 font "sans,10"
set output outdir."/idle.png"
set multiplot layout 1,2 title "Idle clients (lower is better)"
set title "broker memory per idle client (VmRSS growth)"
set ylabel "bytes"
plot datadir."/memory.dat" u 3:xtic(1) t "plexus" lc rgb c_plexus, \
     '' u 4 t "dbus-broker" lc rgb c_broker, \
     '' u 5 t "dbus-daemon" lc rgb c_daemon
set title "p99 call round trip of one active pair"
set ylabel "microseconds"
plot datadir."/idle-p99.dat" u 3:xtic(1) t "plexus" lc rgb c_plexus, \
     '' u 4 t "dbus-broker" lc rgb c_broker, \
     '' u 5 t "dbus-daemon" lc rgb c_daemon
unset multiplot
