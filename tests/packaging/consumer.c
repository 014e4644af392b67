/* A program built against an installed kite, the way a user would build one. */
#include <kite/kite.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (kite_version() != KITE_VERSION_NUM) {
        fprintf(stderr, "header and library versions differ\n");
        return 1;
    }
    uint8_t data[5] = {'H', 'e', 'l', 'l', 'o'};
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    kite_mask(data, sizeof(data), key, 0);
    /* RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d. */
    static const uint8_t want[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    if (memcmp(data, want, sizeof(want)) != 0) {
        fprintf(stderr, "kite_mask gave the wrong bytes\n");
        return 1;
    }
    printf("kite %s ok\n", kite_version_string());
    return 0;
}
