// platform.h: errors, timing, and the model file in memory (mmap, huge pages, Windows wide-character paths).
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <errno.h>
#include <limits.h>
#include <float.h>
#if defined _WIN32
#include <windows.h>
#include <shellapi.h>
#include <fcntl.h>
#include <io.h>
#else
#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#endif

// Every user error is one line on stderr and exit code 1.
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(EXIT_FAILURE);
}

static void *xcalloc(size_t n, size_t size, const char *what) {
    if (n == 0) n = 1;
    if (size != 0 && n > SIZE_MAX / size) die("out of memory allocating %s", what);
    void *p = calloc(n, size);
    if (!p) die("out of memory allocating %s (%zu bytes)", what, n * size);
    return p;
}

static double time_in_s(void) {
#if defined _WIN32
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
#endif
}

// NaN or inf in the bits, so that -ffast-math builds (which assume finite floats) check it too
static int is_finite_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (u & 0x7F800000u) != 0x7F800000u;
}

// stdout is checked where output ends: a full disk or a closed pipe must not look like success.
static void check_stdout(void) {
    errno = 0;
    int failed = fflush(stdout) != 0;
    if (failed || ferror(stdout)) die("cannot write the output (%s)", failed && errno ? strerror(errno) : "disk full or pipe closed?");
}

#if defined _WIN32
// Paths arrive as UTF-8 (utf8_argv): the wide-character calls open them whatever the ANSI code page
// is, so a model in C:\Users\张三\下载 opens on a Chinese, English or any other Windows.
static wchar_t *wide_path(const char *path) {
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, NULL, 0);
    if (n <= 0) die("the path %s is not valid UTF-8", path);
    wchar_t *w = xcalloc((size_t)n, sizeof(wchar_t), "a path");
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, w, n);
    return w;
}

static HANDLE open_windows(const char *path) {
    wchar_t *w = wide_path(path);
    HANDLE h = CreateFileW(w, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    free(w);
    return h;
}

// Windows passes argv in the ANSI code page: take the UTF-16 command line and convert it, so
// a Chinese -i prompt arrives as UTF-8; and the console reads and writes UTF-8.
static char **utf8_argv(int *argc) {
    wchar_t **wargv = CommandLineToArgvW(GetCommandLineW(), argc);
    if (!wargv) die("cannot read the command line");
    char **argv = xcalloc(*argc + 1, sizeof(char *), "the command line");
    for (int i = 0; i < *argc; i++) {
        int n = WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, NULL, 0, NULL, NULL);
        argv[i] = xcalloc(n > 0 ? n : 1, 1, "the command line");
        if (n > 0) WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, argv[i], n, NULL, NULL);
    }
    LocalFree(wargv);
    SetConsoleOutputCP(CP_UTF8);
    SetConsoleCP(CP_UTF8);
    // the bytes the model wrote, as on every other system: text mode would turn \n into \r\n
    _setmode(_fileno(stdout), _O_BINARY);
    return argv;
}
#else
// Opens a file that must be a regular file. O_NONBLOCK: opening a FIFO for reading would
// otherwise wait forever for a writer before fstat could tell what it is.
static int open_regular(const char *path, const char *what, struct stat *st) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) die("cannot open %s %s: %s", what, path, strerror(errno));
    if (fstat(fd, st) != 0) die("cannot read %s %s: %s", what, path, strerror(errno));
    if (S_ISDIR(st->st_mode)) die("%s %s is a folder, not a file", what, path);
    if (!S_ISREG(st->st_mode)) die("%s %s is not a regular file (a FIFO, socket or device?)", what, path);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}
#endif

// A read-only view of a whole file: mmap on POSIX, MapViewOfFile on Windows; on Linux a copy in
// memory backed by 2 MB pages (see load_huge_pages).
typedef struct {
    unsigned char *data;
    size_t size;
    unsigned char *base; // what to munmap (POSIX): data, or the start of the copy's 2 MB pages
    size_t mapped;       // bytes to munmap at base
#if defined _WIN32
    HANDLE file, mapping;
#endif
} MappedFile;

static int no_huge_pages; // 1: map the file as it is (tests/hooks.c sets it from LLAMA2_MMAP=1)

#if defined(__linux__) && defined(MADV_HUGEPAGE)
// Zeroed anonymous memory of at least bytes on a 2 MB boundary, advised to use transparent huge
// pages (it stays lazily allocated, like calloc's); NULL when there is no such memory. *mapped
// gets the length to munmap.
static unsigned char *map_huge(size_t bytes, size_t *mapped) {
    size_t huge = (size_t)2 << 20, len = (bytes + huge - 1) / huge * huge;
    unsigned char *base = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    unsigned char *p = base + (huge - (uintptr_t)base % huge) % huge; // the first 2 MB boundary
    if (p > base) munmap(base, (size_t)(p - base));
    if (p + len < base + len + huge) munmap(p + len, (size_t)(base + len + huge - (p + len)));
    madvise(p, len, MADV_HUGEPAGE);
    *mapped = len;
    return p;
}

static int huge_pages_on(void) { // transparent huge pages, always or where madvise asks
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char mode[128] = "";
    if (f) { if (!fgets(mode, sizeof mode, f)) mode[0] = 0; fclose(f); }
    return strstr(mode, "[always]") || strstr(mode, "[madvise]");
}

// A generated token reads every weight once, so a model larger than the caches streams from
// memory, and every 4 KB page of a plain file mapping costs a TLB miss: the file is copied into
// anonymous memory in 2 MB pages instead (bench/README.md). Returns NULL where that is not
// possible or wise (THP off, no_huge_pages, a model larger than half the available memory, which
// a mapping can still page in from disk), and the caller maps the file.
// body_at(first 4 bytes of the file): where the tensors start. The copy begins that many bytes short
// of a 64-byte boundary, so that the tensors' rows sit on one: a vector load of a row then never
// straddles two cache lines (with version 0's 28-byte header, every 64-byte load did).
static unsigned char *load_huge_pages(int fd, const char *path, size_t size, MappedFile *m, int writable,
                                      size_t (*body_at)(const unsigned char *head)) {
    if (no_huge_pages || !huge_pages_on()) return NULL;
    unsigned long long avail_kb = 0;
    char line[256];
    FILE *f;
    if ((f = fopen("/proc/meminfo", "r"))) {
        while (fgets(line, sizeof line, f)) if (sscanf(line, "MemAvailable: %llu kB", &avail_kb) == 1) break;
        fclose(f);
    }
    if (size / 1024 > avail_kb / 2) return NULL;
    unsigned char head[4] = {0};
    if (pread(fd, head, 4, 0) != 4) return NULL; // the mapping's path then says what is wrong
    size_t lead = (64 - body_at(head) % 64) % 64;
    unsigned char *base = map_huge(size + lead, &m->mapped);
    if (!base) return NULL;
    unsigned char *p = base + lead;
    for (size_t done = 0; done < size;) {
        size_t chunk = size - done < ((size_t)1 << 30) ? size - done : ((size_t)1 << 30);
        ssize_t r = read(fd, p + done, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("cannot read model file %s: %s", path, strerror(errno));
        if (r == 0) die("model file %s got shorter while it was read", path);
        done += (size_t)r;
    }
    if (!writable) mprotect(base, m->mapped, PROT_READ); // read-only, like the mapping
    m->base = base;
    return p;
}
#endif

// Maps the model file; writable: a private copy the kernels may reorder (REORDERS_WEIGHTS, POSIX
// only); body_at: where its tensors start, given its first 4 bytes (see load_huge_pages).
static void map_file(MappedFile *m, const char *path, int writable, size_t (*body_at)(const unsigned char *head)) {
#if defined _WIN32
    (void)writable; (void)body_at; // no Windows build reorders weights
    m->file = open_windows(path);
    if (m->file == INVALID_HANDLE_VALUE) die("cannot open model file %s", path);
    if (GetFileType(m->file) != FILE_TYPE_DISK) die("model file %s is not a regular file (a pipe or device?)", path);
    LARGE_INTEGER sz;
    if (!GetFileSizeEx(m->file, &sz)) die("cannot read the size of %s", path);
    m->size = (size_t)sz.QuadPart;
    if (m->size == 0) die("model file %s is empty", path);
    m->mapping = CreateFileMappingA(m->file, NULL, PAGE_READONLY, 0, 0, NULL);
    if (!m->mapping) die("cannot map model file %s", path);
    m->data = (unsigned char *)MapViewOfFile(m->mapping, FILE_MAP_READ, 0, 0, 0);
    if (!m->data) die("cannot map model file %s", path);
#else
    struct stat st;
    int fd = open_regular(path, "model file", &st);
    m->size = (size_t)st.st_size;
    if (m->size == 0) die("model file %s is empty", path);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    m->data = load_huge_pages(fd, path, m->size, m, writable, body_at);
    if (m->data) { close(fd); return; }
#else
    (void)body_at;
#endif
    void *p = mmap(NULL, m->size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_PRIVATE, fd, 0);
    close(fd);  // the mapping stays valid
    if (p == MAP_FAILED) die("cannot mmap model file %s: %s", path, strerror(errno));
    m->data = m->base = (unsigned char *)p;
    m->mapped = m->size;
#endif
}

static void unmap_file(MappedFile *m) {
    if (!m->data) return;
#if defined _WIN32
    UnmapViewOfFile(m->data);
    CloseHandle(m->mapping);
    CloseHandle(m->file);
#else
    munmap(m->base, m->mapped);
#endif
    m->data = NULL;
}

// n floats of zeroed memory read at every token (the KV cache): in 2 MB pages where Linux has
// them. *mapped: the bytes to munmap, 0 when calloc'd. Written once here, at load, as llama.cpp
// clears its cache: each page's first touch (a fault, the kernel zeroing it) otherwise lands in
// the first prompt's attention and made its speed vary from run to run (bench/README.md).
static float *alloc_huge(size_t n, size_t *mapped, const char *what) {
    *mapped = 0;
    float *p = NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    p = n <= SIZE_MAX / sizeof(float) ? (float *)(void *)map_huge(n * sizeof(float), mapped) : NULL;
#endif
    if (!p) p = xcalloc(n, sizeof(float), what);
    memset(p, 0, n * sizeof(float));
    return p;
}

static void free_huge(float *p, size_t mapped) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (mapped) { munmap(p, mapped); return; }
#endif
    (void)mapped;
    free(p);
}
