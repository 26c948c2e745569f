/* A minimal stand-in for pilot-daemon, for bench/supervisor_scale.py only: 5,000 real daemons (13 MB each) do not
 * fit a test machine. It takes the supervisor's flags, binds its UDP port (-listen :PORT) on loopback, logs the
 * registration event and opens its IPC socket (-socket PATH) as pilot-daemon does once registered, then waits for
 * SIGTERM, removes its socket and exits 0. About 100 KB of memory each. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

static const char *sock_path;

static void stop(int sig) {
    (void)sig;
    if (sock_path) unlink(sock_path);
    _exit(0);
}

/* The contract a live upgrade checks (bench/rollout.py installs it from fake wheels): `-version` prints the name
 * of a directory above the binary (the supervisor installs versions as versions/<version>/pilot-daemon), and
 * `-h` lists the flags it takes, as Go's flag package does. The staging directory the supervisor checks a new
 * binary in lies below versions/<version>/, so the nearest directory named like a version is the answer. */
static const char *FLAGS[] = {"registry", "beacon", "listen", "socket", "identity", "log-format", "log-level",
                              "log-max-size", "log-max-backups", "endpoint", "hostname", "telemetry-url",
                              "motd-feed-url", "no-skillinject", "registry-tls", "registry-fingerprint", NULL};

static int contract(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "-version") == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s", argv[0]);
        char *slash;
        while ((slash = strrchr(path, '/')) != NULL) { /* the nearest directory named like 1.2.3 */
            *slash = 0;
            const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
            if (*name && strspn(name, "0123456789.") == strlen(name)) {
                printf("%s\n", name);
                return 0;
            }
        }
        printf("unknown\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "-h") == 0) {
        fprintf(stderr, "Usage of pilot-daemon:\n");
        for (int i = 0; FLAGS[i]; i++) fprintf(stderr, "  -%s string\n", FLAGS[i]);
        return 0;
    }
    return -1;
}

int main(int argc, char **argv) {
    int answered = contract(argc, argv);
    if (answered >= 0) return answered;
    const char *listen_arg = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-listen") == 0) listen_arg = argv[i + 1];
        if (strcmp(argv[i], "-socket") == 0) sock_path = argv[i + 1];
    }
    if (!listen_arg || !sock_path) {
        fprintf(stderr, "standin: -listen and -socket are required\n");
        return 2;
    }
    const char *colon = strrchr(listen_arg, ':');
    struct sockaddr_in udp = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(colon ? colon + 1 : listen_arg))};
    udp.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (u < 0 || bind(u, (struct sockaddr *)&udp, sizeof udp) != 0) {
        perror("standin: udp bind");
        return 1;
    }
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    printf("{\"level\":\"INFO\",\"msg\":\"daemon registered\",\"node_id\":%d}\n", (int)getpid());
    fflush(stdout);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, sock_path, sizeof addr.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    unlink(sock_path);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 4) != 0) {
        perror("standin: ipc socket");
        return 1;
    }
    for (;;) pause();
}
