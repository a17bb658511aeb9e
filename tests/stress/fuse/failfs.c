/* failfs: a FUSE file system in memory whose writes or fsyncs fail with EIO, for
 * tests/stress/test_disk.py. One flat directory; files hold no data (writes are
 * counted, not kept).
 *
 *   failfs MOUNTPOINT write|fsync [libfuse options...]
 *
 * write: every write() fails with EIO. fsync: writes succeed, fsync()/flush fail. */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

#define MAX_FILES 64
struct file { char name[256]; off_t size; mode_t mode; int used; };
static struct file files[MAX_FILES];
static int fail_write, fail_fsync;

static struct file *find(const char *path) {
    if (path[0] != '/') return NULL;
    for (int i = 0; i < MAX_FILES; i++)
        if (files[i].used && !strcmp(files[i].name, path + 1)) return &files[i];
    return NULL;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    memset(st, 0, sizeof *st);
    if (!strcmp(path, "/")) { st->st_mode = S_IFDIR | 0777; st->st_nlink = 2; return 0; }
    struct file *f = find(path);
    if (!f) return -ENOENT;
    st->st_mode = S_IFREG | f->mode;
    st->st_nlink = 1;
    st->st_size = f->size;
    return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)off; (void)fi; (void)flags;
    if (strcmp(path, "/")) return -ENOENT;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    for (int i = 0; i < MAX_FILES; i++)
        if (files[i].used) fill(buf, files[i].name, NULL, 0, 0);
    return 0;
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
    (void)fi;
    if (find(path)) return -EEXIST;
    for (int i = 0; i < MAX_FILES; i++)
        if (!files[i].used) {
            snprintf(files[i].name, sizeof files[i].name, "%s", path + 1);
            files[i].size = 0;
            files[i].mode = mode & 0777;
            files[i].used = 1;
            return 0;
        }
    return -ENOSPC;
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
    (void)fi;
    return find(path) ? 0 : -ENOENT;
}

static int fs_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi) {
    (void)buf; (void)fi;
    struct file *f = find(path);
    if (!f) return -ENOENT;
    if (fail_write) return -EIO;
    if (off + (off_t)size > f->size) f->size = off + (off_t)size;
    return (int)size;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi) {
    (void)fi;
    struct file *f = find(path);
    if (!f) return -ENOENT;
    if (off >= f->size) return 0;
    if (off + (off_t)size > f->size) size = (size_t)(f->size - off);
    memset(buf, 0, size);
    return (int)size;
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    (void)fi;
    struct file *f = find(path);
    if (!f) return -ENOENT;
    f->size = size;
    return 0;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
    (void)path; (void)datasync; (void)fi;
    return fail_fsync ? -EIO : 0;
}

static int fs_flush(const char *path, struct fuse_file_info *fi) {
    (void)path; (void)fi;
    return fail_fsync ? -EIO : 0;
}

static int fs_unlink(const char *path) {
    struct file *f = find(path);
    if (!f) return -ENOENT;
    f->used = 0;
    return 0;
}

static int fs_rename(const char *from, const char *to, unsigned int flags) {
    struct file *f = find(from);
    if (!f) return -ENOENT;
    struct file *g = find(to);
    if (g && (flags & RENAME_NOREPLACE)) return -EEXIST;
    if (g) g->used = 0;
    snprintf(f->name, sizeof f->name, "%s", to + 1);
    return 0;
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
    (void)fi;
    struct file *f = find(path);
    if (!f) return -ENOENT;
    f->mode = mode & 0777;
    return 0;
}

static const struct fuse_operations ops = {
    .getattr = fs_getattr, .readdir = fs_readdir, .create = fs_create, .open = fs_open,
    .write = fs_write, .read = fs_read, .truncate = fs_truncate, .fsync = fs_fsync,
    .flush = fs_flush, .unlink = fs_unlink, .rename = fs_rename, .chmod = fs_chmod,
};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MOUNTPOINT write|fsync [options]\n", argv[0]);
        return 2;
    }
    fail_write = !strcmp(argv[2], "write");
    fail_fsync = !strcmp(argv[2], "fsync");
    /* fuse_main(prog, -f, mountpoint, extra options...) */
    char *args[32];
    int n = 0;
    args[n++] = argv[0];
    args[n++] = "-f";
    args[n++] = "-s";
    args[n++] = argv[1];
    for (int i = 3; i < argc && n < 31; i++) args[n++] = argv[i];
    args[n] = NULL;
    return fuse_main(n, args, &ops, NULL);
}
